package enrich_test

import (
	"fmt"
	"log"

	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/transform/enrich"
)

// The enrichment goroutine seeds a table from /proc at start, then hands it
// every process event in stream order.
func Example() {
	host, err := enrich.ReadHost("")
	if err != nil {
		log.Fatal(err)
	}
	clock, err := enrich.NewClock(enrich.ClockConfig{})
	if err != nil {
		log.Fatal(err)
	}
	tab, err := enrich.New(enrich.Config{})
	if err != nil {
		log.Fatal(err)
	}
	if err := tab.Seed(""); err != nil {
		log.Fatal(err)
	}
	events := make(chan schema.ProcEvent) // fed by the decoding stage
	close(events)
	for ev := range events {
		p := tab.Enrich(ev)
		fmt.Println(host.BootID, clock.Wall(ev.TimestampNS), p.Source, p.Exe, p.Cmdline)
	}
}
