package testmock

// AwaitConsumerTB is AwaitConsumer for a fake testing.TB.
var AwaitConsumerTB = awaitConsumer
