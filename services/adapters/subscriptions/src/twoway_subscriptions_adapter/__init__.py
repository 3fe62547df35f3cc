"""Example adapter: JOIN / LEAVE keywords subscribe the sender to event sources."""
