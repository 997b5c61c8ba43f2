package httpproxy

import (
	"errors"
	"io"
	"net/netip"

	"golang.org/x/crypto/cryptobyte"
)

// The transparent HTTPS listener names the site from the TLS ClientHello
// before anything is decided: it reads the handshake records carrying the
// ClientHello (keeping the bytes, to replay them to the site or the
// terminator) and parses the server name and whether Encrypted Client
// Hello is offered.

// helloInfo is what the proxy reads from a ClientHello.
type helloInfo struct {
	sni string // the server_name extension's host_name; "" if none
	ech bool   // the encrypted_client_hello extension (0xfe0d) is present
}

// host is the hello's server name in canonical form (normHost) and the
// address it spells, if any; "" when it names none that reads as a host.
func (h helloInfo) host() (string, netip.Addr) {
	if h.sni == "" {
		return "", netip.Addr{}
	}
	nh, a, err := normHost(h.sni)
	if err != nil {
		return "", netip.Addr{}
	}
	return nh, a
}

const (
	recordAlert       = 0x15
	recordHandshake   = 0x16
	alertLevelWarning = 1
	alertCloseNotify  = 0
	// maxHelloAlerts bounds the warning alerts read before and between
	// the hello's records (crypto/tls drops up to 16 records that move
	// nothing on, BoringSSL 4 warning alerts).
	maxHelloAlerts = 16

	extServerName = 0x0000
	extECH        = 0xfe0d
	// maxHello bounds the ClientHello the listener reads (a post-quantum
	// key share makes it about 2 KiB; the TLS limit is 16 MiB).
	maxHello = 64 << 10
	// maxHelloRaw bounds the bytes of records read for one hello: the
	// hello, 16 record headers and the alerts.
	maxHelloRaw = maxHello + 5*16 + 7*maxHelloAlerts
)

var (
	// errHelloNotTLS: the first bytes are not a TLS handshake record.
	errHelloNotTLS = errors.New("traffic is not TLS")
	// errBadHello: a handshake record, but not a ClientHello that parses.
	errBadHello = errors.New("malformed TLS ClientHello")
)

// readClientHello reads the TLS records that carry the ClientHello from r
// and returns every byte it read (raw, to be replayed) and what the hello
// says. It reads no further than the last of those records. On errHelloNotTLS
// raw holds the bytes read so far.
//
// It takes the records as TLS servers do, since what a server accepts as
// a ClientHello is what the proxy must decide: any record-layer version
// with a major byte below 0x10 (BoringSSL and OpenSSL check only the major
// byte, 3; crypto/tls not even that on the first records), and warning
// alerts before and between the hello's records (dropped by crypto/tls
// and BoringSSL before the version is agreed). Read as "not TLS" they let
// a hello naming a blocked site through a tunnel to a port other than 443,
// or under non_tls: flag, undecided.
func readClientHello(r io.Reader) (raw []byte, h helloInfo, err error) {
	var hs []byte // the handshake message, reassembled from records
	raw = make([]byte, 0, 2048)
	alerts := 0
	for {
		start := len(raw)
		raw = append(raw, make([]byte, 5)...)
		if n, err := io.ReadFull(r, raw[start:]); err != nil {
			return raw[:start+n], h, err
		}
		rec := raw[start:]
		n := int(rec[3])<<8 | int(rec[4])
		switch {
		case rec[1] >= 0x10:
		case rec[0] == recordAlert && n == 2 && alerts < maxHelloAlerts && len(raw)+n <= maxHelloRaw:
			raw = append(raw, 0, 0)
			if m, err := io.ReadFull(r, raw[start+5:]); err != nil {
				return raw[:start+5+m], h, err
			}
			if raw[start+5] == alertLevelWarning && raw[start+6] != alertCloseNotify {
				alerts++
				continue // a server drops it and reads on
			}
		case rec[0] == recordHandshake:
			if n == 0 || n > 1<<14+256 || len(raw)+n > maxHelloRaw {
				return raw, h, errBadHello
			}
			raw = append(raw, make([]byte, n)...)
			if m, err := io.ReadFull(r, raw[start+5:]); err != nil {
				return raw[:start+5+m], h, err
			}
			hs = append(hs, raw[start+5:]...)
			if len(hs) < 4 {
				continue
			}
			if hs[0] != 0x01 { // not a ClientHello
				return raw, h, errBadHello
			}
			need := 4 + (int(hs[1])<<16 | int(hs[2])<<8 | int(hs[3]))
			if need > maxHello {
				return raw, h, errBadHello
			}
			if len(hs) < need {
				continue
			}
			if len(hs) > need { // another message in the same flight: not a first flight a client sends
				return raw, h, errBadHello
			}
			hi, ok := parseClientHello(hs)
			if !ok {
				return raw, hi, errBadHello
			}
			return raw, hi, nil
		}
		if start == 0 && alerts == 0 {
			return raw, h, errHelloNotTLS
		}
		return raw, h, errBadHello
	}
}

// parseClientHello parses a handshake message (type, 24-bit length, body)
// that should be a ClientHello.
func parseClientHello(msg []byte) (helloInfo, bool) {
	var h helloInfo
	s := cryptobyte.String(msg)
	var typ uint8
	var body cryptobyte.String
	if !s.ReadUint8(&typ) || typ != 0x01 || !s.ReadUint24LengthPrefixed(&body) || !s.Empty() {
		return h, false
	}
	var version uint16
	var random, session, suites, compression cryptobyte.String
	if !body.ReadUint16(&version) || !body.ReadBytes((*[]byte)(&random), 32) ||
		!body.ReadUint8LengthPrefixed(&session) || len(session) > 32 ||
		!body.ReadUint16LengthPrefixed(&suites) || len(suites) < 2 || len(suites)%2 != 0 ||
		!body.ReadUint8LengthPrefixed(&compression) || len(compression) < 1 {
		return h, false
	}
	if body.Empty() {
		return h, true // no extensions (old clients): no name
	}
	var exts cryptobyte.String
	if !body.ReadUint16LengthPrefixed(&exts) || !body.Empty() {
		return h, false
	}
	seenSNI := false
	for !exts.Empty() {
		var ext uint16
		var data cryptobyte.String
		if !exts.ReadUint16(&ext) || !exts.ReadUint16LengthPrefixed(&data) {
			return h, false
		}
		switch ext {
		case extECH:
			if h.ech {
				return h, false // repeated
			}
			h.ech = true
		case extServerName:
			if seenSNI {
				return h, false
			}
			seenSNI = true
			var list cryptobyte.String
			if !data.ReadUint16LengthPrefixed(&list) || !data.Empty() || list.Empty() {
				return h, false
			}
			for !list.Empty() {
				var nameType uint8
				var name cryptobyte.String
				if !list.ReadUint8(&nameType) || !list.ReadUint16LengthPrefixed(&name) || len(name) == 0 {
					return h, false
				}
				if nameType != 0 { // only host_name is defined
					continue
				}
				if h.sni != "" {
					return h, false // two host names: RFC 6066 forbids it
				}
				for _, c := range name {
					if c <= 0x20 || c >= 0x7f {
						return h, false // a host name is ASCII (A-labels)
					}
				}
				h.sni = string(name)
			}
		}
	}
	return h, true
}
