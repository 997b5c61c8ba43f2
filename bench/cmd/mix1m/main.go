// Command mix1m writes the 1,000,000-domain benchmark list (built from
// ../shared/data/blocklists) to the temp directory and prints its path.
package main

import (
	"fmt"
	"os"

	"github.com/gatehouse-filter/gatehouse/bench/benchdata"
)

func main() {
	path, realNames, err := benchdata.Million()
	if err != nil {
		fmt.Fprintln(os.Stderr, "mix1m:", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "mix1m: %d real names, padded to %d\n", len(realNames), benchdata.Size)
	fmt.Println(path)
}
