// Package sql holds the platform's own SQL: tern migrations of the velocity schema and the
// shared velocity.* functions they load, embedded so every binary migrates the same way.
package sql

import (
	"embed"
	"io/fs"
)

//go:embed migrations/*.sql functions/*.sql
var files embed.FS

// FS is laid out the way tern expects: numbered migrations at the root and the shared
// function files under functions/, where migrations include them with
// {{ template "functions/NAME.sql" . }}.
var FS fs.FS = mustMigrationFS()

func mustMigrationFS() fs.FS {
	m, err := fs.Sub(files, "migrations")
	if err != nil {
		panic(err)
	}
	return overlay{root: m, sub: files, prefix: "functions"}
}

// overlay serves root at "." and sub's prefix directory under prefix/.
type overlay struct {
	root   fs.FS
	sub    fs.FS
	prefix string
}

func (o overlay) Open(name string) (fs.File, error) {
	if name == o.prefix || len(name) > len(o.prefix) && name[:len(o.prefix)+1] == o.prefix+"/" {
		return o.sub.Open(name)
	}
	return o.root.Open(name)
}

func (o overlay) ReadDir(name string) ([]fs.DirEntry, error) {
	if name == o.prefix || len(name) > len(o.prefix) && name[:len(o.prefix)+1] == o.prefix+"/" {
		return fs.ReadDir(o.sub, name)
	}
	entries, err := fs.ReadDir(o.root, name)
	if err != nil || name != "." {
		return entries, err
	}
	dir, err := fs.Stat(o.sub, o.prefix)
	if err != nil {
		return nil, err
	}
	return append(entries, fs.FileInfoToDirEntry(dir)), nil
}
