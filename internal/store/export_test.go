package store

// MigrateTo lets tests stop the platform migrations at a version.
var MigrateTo = migrateTo
