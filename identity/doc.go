// Package identity says who is behind a client address: it merges what
// the school's systems know (proxy and sign-in page logins, RADIUS
// accounting from the Wi-Fi, the directory, DHCP leases) into one table,
// per address, with a clear precedence:
//
//	proxy login > sign-in page > RADIUS > directory > DHCP lease > static device > address
//
// Each source gives at most one Mapping per address (a newer one from the
// same source replaces it), and each mapping lives only as long as its
// session or lease (Mapping.Expires); a Stop or an expiry removes it and
// the address falls back to the next source. The merged view of an address
// (Entry) names the user (and their display name, year group and class
// when a Directory knows them), the group their user name maps to
// (Rules), and the device's name and MAC from its lease.
//
// The DNS resolver reads the table on every query, so Lookup takes no
// lock and allocates nothing: the table is 64 shards, each an immutable
// map from address to a cell published behind an atomic pointer; a cell
// holds the address's current Entry behind its own atomic pointer. A
// change to an address already in the table replaces its Entry (one
// atomic store); a new address rebuilds its shard's map, with every other
// new address waiting at that moment (group commit), so a burst of RADIUS
// Starts costs one shard copy per batch, not per packet. Changes are
// visible to Lookup when Set returns.
//
// Sources plug in by calling Table.Set and Table.Remove: the RADIUS
// listener (radius.go), the DHCP lease files (dhcp.go), the proxy's
// logins (package httpproxy) and the sign-in page (package
// identity/signin).
package identity
