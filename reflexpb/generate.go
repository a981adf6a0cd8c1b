// Package reflexpb holds the protobuf messages and the gRPC service of reflex
// streams. Only reflex.proto and this file are written by hand; regenerate
// with "make generate".
package reflexpb

//go:generate protoc --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative reflex.proto
