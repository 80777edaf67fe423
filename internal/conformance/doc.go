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
// Without them they skip, saying so; with DGLEASE_REQUIRE_TOOLS=1 (set by
// .ci/run under CI=true, after it installs the SDK) they fail instead, so
// this project's CI cannot pass without running them. node_modules is never committed.
package conformance
