//go:build !race

package httpproxy

const raceOn = false
