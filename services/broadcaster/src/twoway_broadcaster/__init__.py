"""The broadcaster: a worker that fans broadcasts out to event sources' subscribers."""
