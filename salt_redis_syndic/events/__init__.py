"""Events forwarded between masters (up from DCs, down from the MoM), bounded and signed."""
