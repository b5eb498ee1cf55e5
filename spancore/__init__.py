"""What training (models/) and serving (service/) must agree on, torch-free: the weights
contract, the input/output constants, the scoring maths and the fixed forensic cues."""
