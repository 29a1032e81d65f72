
confluent/type/variant.protoconfluent.type"*
Variant
metadata (
value (bproto3