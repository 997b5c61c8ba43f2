//go:build !race

package dns

const raceOn = false
