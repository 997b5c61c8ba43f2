package main

import (
	"log/slog"
	"os"

	bl "github.com/gatehouse-filter/gatehouse/blocklists"
	"github.com/gatehouse-filter/gatehouse/config"
	"github.com/gatehouse-filter/gatehouse/policy"
)

// newLists prepares the blocklist manager for cfg (nothing is loaded yet).
func newLists(cfg *config.Config, log *slog.Logger) (*bl.Manager, error) {
	sources, err := policy.Sources(cfg)
	if err != nil {
		return nil, err
	}
	return bl.NewManager(cfg.ListsCacheDir(), sources, cfg.Location(), log), nil
}

// newLogger builds the structured logger the config asks for, at level
// (set from cfg here; a reload changes it).
func newLogger(cfg *config.Config, w *os.File, level *slog.LevelVar) *slog.Logger {
	level.Set(cfg.Log.SlogLevel())
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Log.Format == "json" { // normalised to lower case on load
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
