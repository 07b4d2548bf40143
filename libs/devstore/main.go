// Command ferretdb-local runs FerretDB (a MongoDB-wire-compatible server) embedded, so developers and
// CI get a local store without a MongoDB binary. The upstream cmd/ferretdb panics when installed with
// `go install` (its generated version file is missing from the module), the embeddable package does not.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	_ "net/http/pprof" // served only with --debug-listen: CPU profiles of the store under load
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:27017", "TCP address to listen on")
	handler := flag.String("handler", "sqlite", "backend: sqlite or postgresql")
	sqliteDir := flag.String("sqlite-dir", "./data", "data folder for the sqlite backend")
	pgURL := flag.String("postgresql-url", "", "PostgreSQL URL for the postgresql backend")
	// WAL (FerretDB's default) with synchronous=NORMAL skips the fsync of every commit: a local or
	// CI store survives a crash of the process, not a power cut, and writes are several times faster.
	sqliteParams := flag.String("sqlite-params", "_pragma=synchronous(normal)", "SQLite URI parameters")
	debugListen := flag.String("debug-listen", "", "loopback address for Go's pprof handlers (profiling under load); off when empty")
	// FerretDB 1.24 decodes every document a query reads with encoding/json: under the shift-start
	// load a CPU profile of the store showed about a third of its time in the garbage collector.
	// Collecting at 4x the live heap instead of 2x trades a few tens of MB for that time. GOGC, when
	// set, wins (Go reads it before this runs; SetGCPercent is then skipped).
	gcPercent := flag.Int("gc-percent", 400, "garbage collection target percentage, as GOGC (ignored when GOGC is set)")
	flag.Parse()

	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(*gcPercent)
	}

	if *debugListen != "" {
		go func() { _ = http.ListenAndServe(*debugListen, nil) }()
	}

	if err := os.MkdirAll(*sqliteDir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "cannot create data folder:", err)
		os.Exit(1)
	}

	level := new(slog.LevelVar)
	level.Set(slog.LevelWarn)
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	f, err := ferretdb.New(&ferretdb.Config{
		Listener:      ferretdb.ListenerConfig{TCP: *listen},
		Logger:        logger,
		Handler:       *handler,
		SQLiteURL:     "file:" + *sqliteDir + "/?" + *sqliteParams,
		PostgreSQLURL: *pgURL,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "ferretdb:", err)
		os.Exit(1)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	// MongoDBURI blocks until the listener is up; the parent process waits for this line and
	// reads the actual address from it (the port may be 0 = any free port).
	go fmt.Println("ready", f.MongoDBURI())
	if err := f.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "ferretdb:", err)
		os.Exit(1)
	}
}
