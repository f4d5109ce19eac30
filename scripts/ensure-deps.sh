#!/usr/bin/env bash
# Checks the system packages that `make test` and `make run` need on a Debian 12 machine that
# has only Go, and installs the missing ones when run as root.
#
#   scripts/ensure-deps.sh            # the defaults: Postgres 15 server, contrib, postgres user,
#                                     # redis-server (internal/redistest), gcc
#   scripts/ensure-deps.sh NAME...    # the defaults plus the named extra checks
#
# Each check is a name, a shell test, and the Debian package that satisfies it; add a row to
# CHECKS to support a new dependency.
set -euo pipefail

PG_BIN=/usr/lib/postgresql/15/bin
PG_SHARE=/usr/share/postgresql/15

# name|test|package
CHECKS=(
	"postgres|test -x $PG_BIN/postgres|postgresql-15"
	"initdb|test -x $PG_BIN/initdb|postgresql-15"
	"pg_ctl|test -x $PG_BIN/pg_ctl|postgresql-15"
	"pg_trgm|test -f $PG_SHARE/extension/pg_trgm.control|postgresql-contrib-15"
	"postgres-user|getent passwd postgres >/dev/null|postgresql-15"
	"redis|command -v redis-server >/dev/null|redis-server"
	"gcc|command -v gcc >/dev/null|gcc"
)
# gcc: sqlc, which the generated-code check builds, parses SQL with cgo (pg_query_go).
# redis: the revocation tests start their own redis-server (internal/redistest).
DEFAULTS=(postgres initdb pg_ctl pg_trgm postgres-user redis gcc)

row() {
	local name=$1 entry
	for entry in "${CHECKS[@]}"; do
		if [[ ${entry%%|*} == "$name" ]]; then
			printf '%s\n' "$entry"
			return 0
		fi
	done
	local known=()
	for entry in "${CHECKS[@]}"; do known+=("${entry%%|*}"); done
	echo "ensure-deps: unknown dependency '$name' (known: ${known[*]})" >&2
	exit 2
}

# missing_packages prints, once each, the packages whose checks fail.
missing_packages() {
	local name entry test pkg
	local -A seen=()
	for name in "$@"; do
		entry=$(row "$name")
		test=${entry#*|}
		test=${test%|*}
		pkg=${entry##*|}
		if ! eval "$test" && [[ -z ${seen[$pkg]:-} ]]; then
			seen[$pkg]=1
			printf '%s\n' "$pkg"
		fi
	done
}

main() {
	local names=("${DEFAULTS[@]}" "$@") name
	for name in "${names[@]}"; do row "$name" >/dev/null; done

	local missing
	mapfile -t missing < <(missing_packages "${names[@]}")
	if ((${#missing[@]} == 0)); then
		echo "deps ok"
		return 0
	fi

	if ((EUID != 0)); then
		echo "missing: install with: sudo apt-get install -y ${missing[*]}" >&2
		exit 1
	fi

	echo "ensure-deps: installing ${missing[*]}" >&2
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"

	mapfile -t missing < <(missing_packages "${names[@]}")
	if ((${#missing[@]} != 0)); then
		echo "ensure-deps: still missing after install: ${missing[*]}" >&2
		exit 1
	fi
	echo "deps ok"
}

main "$@"
