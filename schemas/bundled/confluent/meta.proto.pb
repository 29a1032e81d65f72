
confluent/meta.proto	confluent google/protobuf/descriptor.proto"ù
Meta
doc (	+
params (2.confluent.Meta.ParamsEntry
tags (	
rules (2.confluent.Rule-
ParamsEntry
key (	
value (	:8"<
Rule
name (	
doc (	
expr (	
sql (	:A
	file_meta.google.protobuf.FileOptions¿ (2.confluent.Meta:G
message_meta.google.protobuf.MessageOptions¿ (2.confluent.Meta:C

field_meta.google.protobuf.FieldOptions¿ (2.confluent.Meta:A
	enum_meta.google.protobuf.EnumOptions¿ (2.confluent.Meta:L
enum_value_meta!.google.protobuf.EnumValueOptions¿ (2.confluent.MetaBZ../confluentbproto3