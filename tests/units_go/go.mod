module pipeplug.dev/tests/units_go

go 1.25.0

require github.com/pipe-cd/piped-plugin-sdk-go v0.4.0
