//! The data partition: found, checked, formatted when blank, mounted (to be written).
