"""The command-line programs (`tfsm-train`, `tfsm-evaluate`, `tfsm-sweep`,
`tfsm-analyze`): flags → config → one library call → print. Library code
never parses flags; only these modules do."""
