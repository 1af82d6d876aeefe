"""Organization scale: the accounts of an organization, their regions, and the agency each
member account lends imsguard. Loaded only for org sweeps (never by an ordinary event), so the
Organizations, STS and IAM SDKs cost the event path nothing."""
