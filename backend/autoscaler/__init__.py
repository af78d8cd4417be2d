"""The autoscaler: replicas per model from load, renting and releasing hosts through the Provisioner."""
