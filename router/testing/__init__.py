"""The pytest plugin for services' own tests, and throwaway RabbitMQ nodes."""
