package sqlbuild_test

import (
	"testing"

	"github.com/velocitydev/velocity/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }
