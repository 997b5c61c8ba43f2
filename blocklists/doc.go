// Package blocklists loads category blocklists in common formats and indexes them for fast lookup.
package blocklists
