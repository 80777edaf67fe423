package lease_test

import "flag"

var update = flag.Bool("update", false, "rewrite generated sections of RELIABILITY.md")
