package config

import _ "embed"

// Example is a complete, commented configuration file showing every key,
// for `gatehouse config example` and the documentation. It parses without
// errors (the files and feeds it names need not exist).
//
//go:embed example.yaml
var Example []byte
