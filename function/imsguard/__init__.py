"""imsguard: policy-as-code for Huawei Cloud IMS images, run as a FunctionGraph function."""

__version__ = "0.1.0"
