package pgtest

// SweepOrphans lets the tests run the sweep.
var SweepOrphans = sweepOrphans
