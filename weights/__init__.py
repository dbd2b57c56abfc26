"""The zoo's model cards (TOML) and configs, shipped as package data `stemsplit.weights`."""
