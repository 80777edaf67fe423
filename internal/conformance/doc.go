// Package conformance holds tests that run Deepgram's own clients, which
// nobody here wrote, against keys/keystest with credentials leased through
// lease: the official JavaScript SDK (@deepgram/sdk, pinned in
// package.json and package-lock.json) in Node. The package has no code of
// its own.
//
// The tests need node and the SDK installed in this directory:
//
//	cd internal/conformance && npm ci
//
// Without them they skip, saying so; with CI=true they fail instead, so a
// CI run cannot pass without running them (.ci/run installs the SDK
// first). node_modules is never committed.
package conformance
