package enrich_test

import (
	"github.com/cnstream/cnstream/transform"
	"github.com/cnstream/cnstream/transform/enrich"
)

// The transform stage takes a Table as its Enricher and a Clock as its
// WallClock.
var (
	_ transform.Enricher  = (*enrich.Table)(nil)
	_ transform.WallClock = (*enrich.Clock)(nil)
)
