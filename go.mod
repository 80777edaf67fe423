module github.com/dglease/dglease

go 1.25.0

require github.com/deepgram/deepgram-go-sdk/v3 v3.5.0

require (
	github.com/dvonthenen/websocket v1.5.1-dyv.2 // indirect
	github.com/go-logr/logr v1.3.0 // indirect
	github.com/gorilla/schema v1.3.0 // indirect
	github.com/jarcoal/httpmock v1.4.1 // indirect
	github.com/stretchr/testify v1.11.1 // indirect
	go.uber.org/goleak v1.3.0 // indirect
	golang.org/x/sync v0.18.0 // indirect
	golang.org/x/time v0.15.0 // indirect
	k8s.io/klog/v2 v2.110.1 // indirect
)
