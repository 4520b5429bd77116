"""The broker shell: the only importer of aio-pika, aiormq and pamqp."""
