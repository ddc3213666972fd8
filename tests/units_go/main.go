// Command units_go prints what the Go SDK's unit types make of JSON values, so that
// tests/test_units.py can hold pipeplug.Percentage and pipeplug.Replicas to the same answers.
//
// Input (stdin): {"values": [<any JSON>...], "totals": [<int>...]}.
// Output (stdout): one record per value, in order.
package main

import (
	"encoding/json"
	"os"

	"github.com/pipe-cd/piped-plugin-sdk-go/unit"
)

type input struct {
	Values []json.RawMessage `json:"values"`
	Totals []int             `json:"totals"`
}

type verdict struct {
	PercentageOK bool   `json:"percentageOk"`
	Percentage   string `json:"percentage"`
	ReplicasOK   bool   `json:"replicasOk"`
	Replicas     string `json:"replicas"`
	// Calculated holds Replicas.Calculate(total, 7) for each of the input's totals.
	Calculated []int `json:"calculated"`
}

func main() {
	var in input
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		panic(err)
	}
	out := make([]verdict, 0, len(in.Values))
	for _, raw := range in.Values {
		var p unit.Percentage
		var r unit.Replicas
		v := verdict{PercentageOK: json.Unmarshal(raw, &p) == nil, ReplicasOK: json.Unmarshal(raw, &r) == nil}
		v.Percentage, v.Replicas = p.String(), r.String()
		for _, total := range in.Totals {
			v.Calculated = append(v.Calculated, r.Calculate(total, 7))
		}
		out = append(out, v)
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		panic(err)
	}
}
