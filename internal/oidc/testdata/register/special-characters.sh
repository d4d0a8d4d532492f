aws iam create-open-id-connect-provider \
  --url 'https://example.com/it'\''s $(id) ${HOME}' \
  --client-id-list 'a b' '"q"\' \
  --thumbprint-list 0123456789abcdef0123456789abcdef01234567
