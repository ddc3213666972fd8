package main

import (
	_ "github.com/pipe-cd/pipecd/pkg/app/pipedv1/apistore/commandstore"
	_ "github.com/pipe-cd/pipecd/pkg/app/pipedv1/cmd/piped/grpcapi"
	_ "github.com/pipe-cd/pipecd/pkg/app/pipedv1/controller"
	_ "github.com/pipe-cd/pipecd/pkg/app/pipedv1/metadatastore"
	_ "github.com/pipe-cd/pipecd/pkg/app/pipedv1/plugin"
	_ "github.com/pipe-cd/pipecd/pkg/lifecycle"
	_ "github.com/pipe-cd/pipecd/pkg/plugin/api/v1alpha1"
	_ "github.com/pipe-cd/pipecd/pkg/rpc"
)

func main() {}
