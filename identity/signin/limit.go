package signin

// MaxConnsPerAddr bounds one address's open connections to the page (a
// browser opens a few; a small NAT behind one address a few dozen). More
// are closed as they are accepted, so one client cannot take the
// listener's whole connection bound (serve's 1,024).
const MaxConnsPerAddr = 64
