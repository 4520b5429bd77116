"""Schema evolution at check time: can one version read what another wrote."""
