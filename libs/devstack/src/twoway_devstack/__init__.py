"""Development and test servers for Twoway: RabbitMQ and a MongoDB-speaking server.

From the environment (TWOWAY_AMQP_URL, TWOWAY_MONGO_URL), from testcontainers when Docker
answers, else project-local (Debian's rabbitmq-server and SecantusDB) under a data folder.
"""

from twoway_devstack.servers import ServerUrls, provide_servers

__all__ = ["ServerUrls", "provide_servers"]
