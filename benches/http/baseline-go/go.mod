module jessy/benches/http/baseline-go

go 1.26
