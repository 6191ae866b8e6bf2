"""The MLLP listener's side: the router (parse, de-duplicate, dispatch, ACK), batches, TLS, exposure."""
