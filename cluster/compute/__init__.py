"""Running on Ray: the connection (embedded or by address), local multi-node clusters, job
submission through the Jobs API, and the Serve flags a Ray starts with."""
