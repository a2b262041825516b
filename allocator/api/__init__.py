"""The HTTP API: thin routes over the service layer, problem documents for every refusal."""
