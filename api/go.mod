module github.com/jessy-db/jessy/api

go 1.26
