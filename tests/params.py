"""The one place that holds seeds and sizes for tests."""

SEED = 7
SECOND_SEED = 1234
SMALL_CUSTOMERS = 2_000
DEMO_CUSTOMERS = 20_000
UPLIFT_ROWS = 6_000
DEFAULT_SEED = 42  # settings default: the identity floor is stated on it
SHIFTED_BANK_CUSTOMERS = 300  # the bank world's smallest size Splink trains on (EM needs pairs)
