package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"

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
	return bl.NewManager(cacheDir(cfg), sources, cfg.Location(), log), nil
}

// cacheDir is where downloaded lists are kept: lists/cache beside the
// database.
func cacheDir(cfg *config.Config) string { return filepath.Join(cfg.Dir(), "lists", "cache") }

// newLogger builds the structured logger the config asks for.
func newLogger(cfg *config.Config, w *os.File) *slog.Logger {
	var level slog.Level
	switch strings.ToLower(cfg.Log.Level) {
	case "debug":
		level = slog.LevelDebug
	case "warn", "warning":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	}
	opts := &slog.HandlerOptions{Level: level}
	if strings.EqualFold(cfg.Log.Format, "json") {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
