"""Example adapter: the JOIN / LEAVE keywords subscribe the sender to event sources and
unsubscribe it."""
