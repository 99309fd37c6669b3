"""Source data onto the customer: the sources file's schema (``schema``), a team's
exports mapped onto the contract by it (``files``, one file at a time by ``mapping``), the
identity records of the demo exports (``identity_records``), and the feature build's
input as integer customer codes, from the demo exports (``coded_exports``) or from the
staged contract (``coded_contract``)."""
