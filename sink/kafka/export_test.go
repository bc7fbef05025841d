package kafka

// HashPartition is hashPartition, for the tests of package kafka_test.
var HashPartition = hashPartition
