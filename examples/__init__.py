"""Example services of the order domain, on ``router.sdk`` (see README, "SDK")."""
