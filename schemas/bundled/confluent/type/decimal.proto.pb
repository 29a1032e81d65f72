
confluent/type/decimal.protoconfluent.type":
Decimal
value (
	precision (
scale (bproto3