"""The trigger box: the sync controller's hand on the rig (an LED every camera sees and a TTL line
into the EMG amplifier's trigger input)."""
