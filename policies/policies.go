// Package policies embeds Parley's Casbin model and base policy.
package policies

import _ "embed"

// Model is the Casbin model (model.conf).
//
//go:embed model.conf
var Model string

// Policy is the base policy (policy.csv): which role holds which permission.
//
//go:embed policy.csv
var Policy string
