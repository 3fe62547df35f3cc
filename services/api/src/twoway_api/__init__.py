"""The api: Twoway's control plane over REST, described by its own OpenAPI document."""
